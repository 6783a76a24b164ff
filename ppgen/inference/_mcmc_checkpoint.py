"""NumPyro MCMC in chunks, with an atomic safetensors checkpoint after each and exact resume.

The checkpoint (``mcmc_checkpoint.safetensors`` in ``checkpoint_dir``) holds the sampler's last
state (NumPyro's ``HMCState`` pytree flattened with ``jax.tree_util`` into named arrays: position,
gradient, adapted step size and mass matrix, RNG keys), the draws and sample statistics so far,
and in its metadata the settings, seed and a digest of the data it was written for. Nothing is
pickled. Every chunk, resumed or not, starts from the state read back from those arrays, so a
resumed run feeds the sampler exactly what the uninterrupted run did.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ppgen.errors import CheckpointError
from ppgen.io import atomic_write

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext
    from ppgen.inference.mcmc import MCMC

__all__ = ["CHECKPOINT_NAME", "chunk_length", "check_resume", "run_chunked"]

CHECKPOINT_NAME = "mcmc_checkpoint.safetensors"
FORMAT = "ppgen-mcmc-checkpoint/1"
DEFAULT_CHUNKS = 10  # without `checkpoint_every`: about ten chunks (plus one after warm-up)
_IGNORED_SETTINGS = ("jit", "backend")  # no effect on a NumPyro chain


def chunk_length(num_samples: int, thinning: int, every: int | None) -> int:
    """Transitions per chunk: ``every`` (default ``num_samples / 10``), a multiple of ``thinning``.

    Example:
        >>> chunk_length(1000, 1, None), chunk_length(1000, 3, 100), chunk_length(5, 1, None)
        (100, 102, 1)
    """
    n = every if every else math.ceil(num_samples / DEFAULT_CHUNKS)
    return max(thinning, math.ceil(n / thinning) * thinning)


def check_resume(ctx: FitContext) -> Path | None:
    """The checkpoint path of this fit; with ``resume=True`` it must exist (before any work)."""
    if ctx.checkpoint_dir is None:
        if ctx.resume:
            raise CheckpointError(
                "`resume=True` needs `checkpoint_dir=`: the directory an earlier checkpointed "
                "NUTS/HMC run wrote to. Pass it, or drop `resume=True` to start a new run."
            )
        return None
    path = Path(ctx.checkpoint_dir) / CHECKPOINT_NAME
    if ctx.resume and not path.is_file():
        svi = (Path(ctx.checkpoint_dir) / "checkpoint.pt").exists()
        raise CheckpointError(
            "`resume=True` but there is no MCMC checkpoint in "
            f"`checkpoint_dir={ctx.checkpoint_dir}`"
            + (" (it holds an optimisation checkpoint, not an MCMC one)" if svi else "")
            + f": expected `{CHECKPOINT_NAME}`, written by NUTS/HMC on a NumPyro program with "
            "`checkpoint_dir=`. Drop `resume=True` to start a new run there."
        )
    return path


def _digest(data: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for k in sorted(data):
        v = data[k]
        a = np.asarray(v) if v is not None else None
        h.update(k.encode())
        if a is None or a.dtype == object:
            h.update(repr(v).encode())
        else:
            h.update(f"{a.dtype.str}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _fingerprint(est: MCMC, ctx: FitContext, chunk: int) -> dict[str, Any]:
    settings = {k: v for k, v in est.settings().items() if k not in _IGNORED_SETTINGS}
    return {
        "format": FORMAT,
        "sampler": type(est).__name__,
        "settings": settings,
        "chunk": chunk,
        "seed": ctx.seed,
        "data": _digest(ctx.data_np),
    }


def _flatten(state: Any) -> tuple[dict[str, np.ndarray], tuple]:
    """The sampler state as named arrays (``state.z['mu']``...), and its layout (names, treedef)."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    arrays = {"state" + jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}
    return arrays, (tuple(arrays), treedef)


def _unflatten(arrays: dict[str, np.ndarray], layout: tuple) -> Any:
    """The sampler state from its named arrays: the inverse of :func:`_flatten`."""
    import jax
    import jax.numpy as jnp

    names, treedef = layout
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[n]) for n in names])


def _stack(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if not chunks:
        return {}
    return {k: np.concatenate([c[k] for c in chunks], axis=1) for k in chunks[0]}


def _save(path: Path, state: dict[str, np.ndarray], chunks: tuple, done: int, meta: dict) -> None:
    from safetensors.numpy import save

    arrays = dict(state)
    for prefix, part in (("draws/", chunks[0]), ("extra/", chunks[1])):
        arrays.update({prefix + k: v for k, v in _stack(part).items()})
    arrays = {k: np.asarray(v, order="C") for k, v in arrays.items()}  # keeps 0-d arrays 0-d
    header = {"ppgen": json.dumps({**meta, "transitions_done": done}, sort_keys=True)}
    blob = save(arrays, metadata=header)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))  # keeps the umask's mode


def _load(path: Path, meta: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict, dict, int]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            saved = json.loads((f.metadata() or {})["ppgen"])
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except Exception as e:
        raise CheckpointError(
            f"`{path}` is not a readable MCMC checkpoint ({type(e).__name__}: {e}). Delete it "
            "and run without `resume=True`."
        ) from e
    diff = [k for k in ("format", "sampler", "chunk", "seed", "data") if saved.get(k) != meta[k]]
    old, new = saved.get("settings", {}), meta["settings"]
    diff += [
        f"{k}={old.get(k)!r} (now {new.get(k)!r})" for k in sorted(new) if old.get(k) != new[k]
    ]
    if diff:
        raise CheckpointError(
            f"The MCMC checkpoint `{path}` was written by another run: {diff} differ "
            "(sampler, settings, `checkpoint_every`, `seed` or data). Resume with the same "
            "call, or drop `resume=True` to start over (the checkpoint is then replaced)."
        )
    parts: tuple[dict, dict, dict] = ({}, {}, {})
    for k, v in arrays.items():
        if k.startswith("state"):
            parts[0][k] = v
        else:
            prefix, _, name = k.partition("/")
            parts[1 if prefix == "draws" else 2][name] = v
    return parts[0], parts[1], parts[2], int(saved["transitions_done"])


def _state_layout(est: MCMC, ctx: FitContext, arrays: dict[str, np.ndarray], path: Path) -> tuple:
    """The layout of a fresh kernel's state, checked against the saved arrays' names and shapes."""
    import jax

    kernel = est._numpyro_kernel(ctx.program.model)  # a scratch kernel: the sampler's own
    template = kernel.init(  # is initialised by its first run, as in an uninterrupted run
        jax.random.PRNGKey(0), est.num_warmup, None, model_args=(), model_kwargs=ctx.data
    )
    leaves, layout = _flatten(template)
    lead = (est.num_chains,) if est.num_chains > 1 else ()
    for name, leaf in leaves.items():
        a = arrays.get(name)
        if a is None or a.shape != lead + leaf.shape or a.dtype != leaf.dtype:
            got = "missing" if a is None else f"{a.dtype}{list(a.shape)}"
            raise CheckpointError(
                f"The MCMC checkpoint `{path}` does not fit this program's sampler state: "
                f"`{name}` is {got}, expected {leaf.dtype}{list(lead + leaf.shape)}. Resume "
                "with the program that wrote it, or drop `resume=True` to start over."
            )
    return layout


def _sample_chunk(mcmc: Any, state: Any, n: int, fields: tuple, data: dict) -> tuple:
    """``n`` more transitions from ``state``: (draws, extra fields, last state)."""
    mcmc.num_samples = n
    mcmc.post_warmup_state = state
    mcmc.run(state.rng_key, extra_fields=fields, **data)
    draws = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    return draws, extra, mcmc.last_state


def run_chunked(
    est: MCMC, ctx: FitContext, mcmc: Any, fields: tuple
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]:
    """Warm up, then sample in chunks, checkpointing after each; draws, extra fields, diagnostics.

    With ``ctx.resume`` the warm-up and the chunks already in the checkpoint are skipped. Ctrl-C
    keeps the chunks done so far (the checkpoint holds them) and returns them with a warning.
    """
    import jax

    path = check_resume(ctx)
    assert path is not None
    chunk = chunk_length(est.num_samples, est.thinning, ctx.checkpoint_every)
    total = (est.num_samples // est.thinning) * est.thinning  # later transitions keep no draw
    meta = _fingerprint(est, ctx, chunk)
    if ctx.resume:
        arrays, draws, extra, done = _load(path, meta)
        layout = _state_layout(est, ctx, arrays, path)
        chunks: tuple = ([draws] if done else [], [extra] if done else [])
    else:
        mcmc.warmup(jax.random.PRNGKey(ctx.seed), extra_fields=fields, **ctx.data)
        arrays, layout = _flatten(mcmc.post_warmup_state)
        chunks, done = ([], []), 0
        _save(path, arrays, chunks, done, meta)
    progress = (arrays, chunks, done)  # replaced in one assignment: always consistent
    interrupted = False
    try:
        while progress[2] < total:
            arrays, (draws, extra), done = progress
            n = min(chunk, total - done)
            d, e, last = _sample_chunk(mcmc, _unflatten(arrays, layout), n, fields, ctx.data)
            progress = (_flatten(last)[0], (draws + [d], extra + [e]), done + n)
            _save(path, *progress, meta)
    except KeyboardInterrupt:
        interrupted = True
        _save(path, *progress, meta)  # the last complete chunk, whatever the interrupt cut
        if not progress[2]:
            raise
        warnings.warn(
            f"Interrupted after {progress[2]} of {total} transitions per chain; returning the "
            f"draws so far. `resume=True` with the same call continues from `{path}`.",
            RuntimeWarning,
            stacklevel=2,
        )
    _, (draws, extra), done = progress
    diag = {"interrupted": interrupted, "checkpoint_chunk": chunk, "transitions": done}
    return _stack(draws), _stack(extra), diag
