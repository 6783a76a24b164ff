"""Pyro NUTS/HMC chains: one chain in this process, or several in worker processes.

Pyro's own multi-chain mode forks processes and fails on many programs (pyro #2315, #2656).
Here each chain is the same single-chain run wherever it runs: seeded ``seed + chain``, so
chain ``i`` of a parallel run equals chain ``i`` of a sequential one. Workers are *spawned*
(fresh interpreters: no forked torch/JAX threads) and receive the estimator, the program and
the data by pickle, so the program must be importable (a module-level function or class);
when it cannot be sent, the chains run one after another here, and a warning says why.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.errors import EstimatorError, caller_stacklevel

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext

__all__ = ["run_chain", "run_chains"]

Chain = tuple[dict[str, np.ndarray], dict[str, np.ndarray]]


def run_chain(
    est: Any, model: Any, info: Any, data: dict, seed: int, chain: int, bar: bool
) -> Chain:
    """Chain ``chain`` of ``est`` (NUTS/HMC) on a Pyro ``model``: its thinned draws and its
    per-draw statistics, as numpy arrays."""
    import pyro
    from pyro.infer import MCMC as PyroMCMC

    pyro.set_rng_seed((seed + chain) % 2**32)  # NumPy's seed range
    kernel = est._pyro_kernel(model, info)
    mcmc = PyroMCMC(
        kernel,
        num_samples=est.num_samples,
        warmup_steps=est.num_warmup,
        num_chains=1,
        disable_progbar=not bar,
    )
    mcmc.run(**data)
    draws = {k: v.detach().cpu().numpy()[:: est.thinning] for k, v in mcmc.get_samples().items()}
    rec = kernel._ppgen_stats
    stats = {k: np.array([r[k] for r in rec])[:: est.thinning] for k in rec[0]}
    return draws, stats


def _worker(payload: bytes) -> Chain:
    """A spawned worker's chain: rebuild the program, check the data, run the chain."""
    import torch

    from ppgen.program import Program

    est, obj, guide, data, seed, chain, device = pickle.loads(payload)
    torch.set_num_threads(1)
    prog = Program(obj, guide, backend="pyro")
    native, info = prog.validate(data, device, seed)
    with prog.ops.device_context(device):
        return run_chain(est, prog.model, info, native, seed, chain, False)


def run_chains(est: Any, ctx: FitContext) -> list[Chain]:
    """Every chain of ``est`` on ``ctx``: in worker processes for ``chain_method="parallel"``
    (at most one per core) when the program can be sent to them, else one after another."""
    n = est.num_chains
    if est.chain_method == "parallel" and n > 1:
        payloads = _payloads(est, ctx)
        if payloads is not None:
            workers = min(n, os.cpu_count() or 1)
            spawn = multiprocessing.get_context("spawn")
            try:
                with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
                    return list(pool.map(_worker, payloads))
            except BrokenProcessPool as e:
                raise EstimatorError(
                    f"The worker processes of chain_method='parallel' died before returning "
                    f"their chains ({e}). A script that calls ppgen.fit at its top level must "
                    "do so under `if __name__ == '__main__':` (each worker imports the script); "
                    "or use chain_method='sequential'."
                ) from e
    model = ctx.program.model
    return [run_chain(est, model, ctx.info, ctx.data, ctx.seed, c, ctx.progress) for c in range(n)]


def _payloads(est: Any, ctx: FitContext) -> list[bytes] | None:
    """Each chain's pickled job, or ``None`` (with a warning) when the program cannot be
    pickled: a lambda, a function defined inside another, an object holding either."""
    prog = ctx.program
    try:
        return [
            pickle.dumps((est, prog.obj, prog.user_guide, ctx.data_np, ctx.seed, c, ctx.device))
            for c in range(est.num_chains)
        ]
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        warnings.warn(
            f"chain_method='parallel': the program cannot be sent to worker processes "
            f"({type(e).__name__}: {str(e).strip()}), so its {est.num_chains} chains run one "
            "after another in this process. Define the program (and anything it closes over) "
            "at the top level of an importable module to run them in parallel.",
            UserWarning,
            stacklevel=caller_stacklevel(),
        )
        return None
