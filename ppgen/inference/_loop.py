"""The shared training loop: minibatches, progress, callbacks, early stop, NaN guard, resume."""

from __future__ import annotations

import functools
import math
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from ppgen._data_plate import array_shape as _shape
from ppgen._data_plate import describe_plate as _describe
from ppgen._data_plate import observed_axis as _observed_axis
from ppgen._data_plate import outer_leading, plate_candidates
from ppgen.errors import CheckpointError, EstimatorError, NonFiniteError, PPGenError, ProgramError
from ppgen.inference._step_errors import step_error
from ppgen.io import load_tree, save_tree
from ppgen.result import items_of, sets_for_items

if TYPE_CHECKING:
    from ppgen.inference._base import FitContext, OptimEstimator
    from ppgen.program import ProgramInfo
    from ppgen.result import Fit

__all__ = [
    "Minibatcher",
    "EarlyStopping",
    "StopTraining",
    "run_loop",
    "check_plate_follows_data",
    "find_batch_plate",
    "plate_axes",
    "CHECKPOINT_NAME",
]

CHECKPOINT_NAME = "checkpoint.pt"


class StopTraining(Exception):
    """Raise from a callback (or return ``True``) to stop the loop after this step."""


class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` steps.

    Example:
        >>> es = EarlyStopping(patience=2)
        >>> [es(i, {"loss": v}) for i, v in enumerate([3.0, 2.0, 2.5, 2.4])]
        [False, False, False, True]
    """

    def __init__(self, patience: int = 100, min_delta: float = 0.0, monitor: str = "loss"):
        self.patience, self.min_delta, self.monitor = patience, min_delta, monitor
        self.best = math.inf
        self.wait = 0

    def __call__(self, step: int, metrics: Mapping[str, float]) -> bool:
        v = metrics[self.monitor]
        if v < self.best - self.min_delta:
            self.best, self.wait = v, 0
            return False
        self.wait += 1
        return self.wait >= self.patience


def _leading_len(v: Any) -> int | None:
    shape = _shape(v)
    return shape[0] if shape else None


def find_batch_plate(
    info: ProgramInfo, data: Mapping[str, Any], name: str | None, batch_size: int | None = None
) -> Any:
    """The plate minibatches subsample: ``name``, or the one plate that holds every observed
    site and indexes an axis of the observed data (read from the trace: the plate's ``dim``
    in each observed array's batch shape).

    Several such plates are ambiguous and refused, listing them (pass ``batch_plate=``),
    unless one of them is the outer plate by both conventions: it holds every site the others
    hold and more (a per-datum latent, as a VAE's ``z`` in a data plate around a pixel plate)
    and it indexes the leading axis of the observed arrays (plate-first data). LDA's words x
    documents array, in a words plate (dim -2) nested in a documents plate (dim -1) that
    alone holds the document's topics, is refused: the plates' nesting and the data's layout
    disagree.
    """
    plates = info.plates
    b = f"`batch_size={batch_size}`" if batch_size is not None else "`batch_size`"
    if name is not None:
        if name not in plates:
            raise EstimatorError(
                f"`batch_plate={name!r}` is not a plate of the program; its plates are "
                f"{sorted(plates)}."
            )
        return plates[name]
    cands = plate_candidates(info, data)
    if not cands:
        raise EstimatorError(
            f"{b} is set but no plate holds every observed site and indexes an axis of the "
            f"observed data (plates: { {n: p.size for n, p in plates.items()} }; data shapes: "
            f"{ {k: _shape(v) for k, v in data.items() if _shape(v)} }). Put the observations "
            "in a plate over the data, e.g. `with plate('data', len(x))`, or pass "
            "`batch_plate=`."
        )
    if len(cands) > 1:
        outer = outer_leading(info, cands)
        if outer is not None:
            return plates[outer]
        listed = "; ".join(_describe(plates[n], a) for n, a in cands.items())
        raise EstimatorError(
            f"{b} is set but {len(cands)} plates hold every observed site and index the "
            f"observed data: {listed}. Which one spans the data points (the rows to "
            f"subsample) cannot be told from the program. Pass `batch_plate=` naming it: "
            + " or ".join(f"`batch_plate={n!r}`" for n in cands)
            + "."
        )
    return plates[next(iter(cands))]


def plate_axes(info: ProgramInfo, data: Mapping[str, Any], plate: Any) -> dict[str, int]:
    """The axis of each data array that ``plate`` indexes; arrays absent pass unchanged.

    An observed site's array: the axis the trace puts the plate at (``ndim - event_dim +
    dim``), when it has the plate's size. Any other array (a covariate such as ``X`` in
    ``X @ w``, labels): its one axis of the plate's size; an array with no such axis is a
    constant. One with several, which no observed site shows the layout of, is ambiguous and
    refused, naming the key. No array indexed at all is refused too: the plate's sites would
    be weighted ``N / B`` with nothing subsampled.
    """
    axes: dict[str, int] = {}
    ambiguous: dict[str, tuple[int, ...]] = {}
    for k, v in data.items():
        shape = _shape(v)
        if not shape:
            continue
        if k in info.obs_keys:
            a = _observed_axis(info, k, shape, plate)
            if a is not None:
                axes[k] = a
            continue
        hits = [i for i, n in enumerate(shape) if n == plate.size]
        if len(hits) == 1:
            axes[k] = hits[0]
        elif hits:
            ambiguous[k] = shape
    if ambiguous:
        k, shape = next(iter(ambiguous.items()))
        raise EstimatorError(
            f"Minibatching plate `{plate.name}` (size {plate.size}) cannot tell which axis of "
            f"`data[{k!r}]` (shape {shape}) it indexes: several axes have size {plate.size} "
            "and no observed site shows the layout. Pass an array with one axis of the data's "
            "length (e.g. transpose or split it), bind a constant to the program instead of "
            "passing it as data (it is then never sliced), or leave `batch_size` out."
        )
    if not axes:
        raise EstimatorError(
            f"Plate `{plate.name}` (size {plate.size}, dim {plate.dim}) indexes no axis of the "
            f"data (shapes: { {k: _shape(v) for k, v in data.items() if _shape(v)} }): "
            f"minibatching it would weight its sites by N/B without subsampling anything. "
            "Pass `batch_plate=` naming the plate over the data points (the one whose dim is "
            "the data's row axis), or leave `batch_size` out."
        )
    return axes


class Minibatcher:
    """Shuffled minibatches of the data arrays, each sliced along the axis the batch plate
    indexes (``axes``: key -> axis, from :func:`plate_axes`; by default the arrays whose
    leading axis has length ``size``). Arrays not in ``axes`` (constants) pass unchanged.

    Each epoch is a fresh permutation, so every batch is a uniform random subset and the
    scaled minibatch loss (sites inside the plate weighted ``N / B``) is an unbiased estimate
    of the full-data loss. When ``B`` does not divide ``N`` the epoch ends with a partial
    batch of ``N mod B`` rows weighted ``N / (N mod B)`` (its own ``B``): still unbiased, but
    a noisier step. ``drop_last=True`` skips it: each epoch is ``floor(N / B)`` full batches
    of a fresh permutation (the rows left out differ from epoch to epoch).
    A ``batch_size`` of at least ``size`` means full batches; larger than ``size``, it is
    probably a mistake, and one ``UserWarning`` (naming ``plate``) says so.
    ``shard=(rank, world)`` (data-parallel runs): every process draws the same global batch and
    keeps its rows ``rank::world``, weighted ``N / b`` with ``b`` its own rows, so the average
    of the processes' gradients is the global batch's.

    Example:
        >>> x = np.arange(10.0).reshape(2, 5)  # the plate indexes axis 1 (plate-last)
        >>> mb = Minibatcher({"x": x}, 5, 2, seed=0, axes={"x": 1})
        >>> [tuple(b["x"].shape) + (s,) for b, s in (mb.next() for _ in range(3))]
        [(2, 2, 2.5), (2, 2, 2.5), (2, 1, 5.0)]
        >>> Minibatcher({"x": x}, 5, 2, seed=0, axes={"x": 1}, drop_last=True).steps_per_epoch
        2
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        size: int,
        batch_size: int | None,
        seed: int,
        plate: str | None = None,
        axes: Mapping[str, int] | None = None,
        drop_last: bool = False,
        shard: tuple[int, int] = (0, 1),
    ):
        self.data = dict(data)
        self.rank, self.world = shard
        self.size = size
        if batch_size and batch_size > size:
            where = f"plate `{plate}` spans" if plate else "the batch plate spans"
            warnings.warn(
                f"`batch_size={batch_size}` is larger than the data: {where} N={size} rows, so "
                f"every step uses all {size} (full-batch training, no minibatches). Pass "
                f"batch_size < {size} for minibatches, or leave it out.",
                UserWarning,
                stacklevel=3,
            )
        self.batch_size = batch_size if batch_size and batch_size < size else None
        if axes is None:
            axes = {k: 0 for k, v in data.items() if _leading_len(v) == size}
        self.axes = dict(axes)
        self.keys = list(self.axes)
        self.drop_last = bool(drop_last)
        self.rng = np.random.default_rng(seed)
        self.perm: np.ndarray | None = None
        self.pos = 0
        self._before = (None, 0, None)
        # the permutation as a torch index on each device the data live on, made once per
        # shuffle: a step slices it (a view) instead of copying its rows from numpy
        self._index_of: tuple[np.ndarray | None, dict[Any, Any]] = (None, {})

    @property
    def steps_per_epoch(self) -> int:
        if self.batch_size is None:
            return 1
        if self.drop_last:
            return self.size // self.batch_size
        return math.ceil(self.size / self.batch_size)

    def next(self) -> tuple[dict[str, Any], float]:
        """The next batch and its scale ``N / B`` (``B``: this batch's rows)."""
        self._before: tuple[Any, int, Any] = (self.perm, self.pos, None)
        if self.batch_size is None:
            return self.data, 1.0
        if self.perm is None or self.pos + (self.batch_size if self.drop_last else 1) > self.size:
            self._before = (self.perm, self.pos, self.rng.bit_generator.state)
            self.perm = self.rng.permutation(self.size)
            self.pos = 0
        start = self.pos
        idx = self.perm[start : start + self.batch_size]
        self.pos += self.batch_size
        if self.world > 1:  # data-parallel: this process's share of the global batch
            idx = idx[self.rank :: self.world]
        return self.take(idx, start), self.size / len(idx)

    def _torch_index(self, device: Any, start: int) -> Any:
        """This step's rows of the permutation (this process's share) as a torch index on
        ``device``: the rows :meth:`next` draws, without a copy from numpy per step."""
        perm, by_device = self._index_of
        if perm is not self.perm:
            perm, by_device = self._index_of = (self.perm, {})
        index = by_device.get(device)
        if index is None:
            index = by_device[device] = sys.modules["torch"].as_tensor(perm, device=device)
        index = index[start : start + self.batch_size]
        return index[self.rank :: self.world] if self.world > 1 else index

    def undo(self) -> None:
        """Forget the last :meth:`next`: its rows are drawn again (a step cut short or
        rewound). Cheaper than a :meth:`state_dict` per step: the generator's state is kept
        only when that call reshuffled."""
        perm, pos, rng = self._before
        self.perm, self.pos = perm, pos
        if rng is not None:
            self.rng.bit_generator.state = rng

    def take(self, idx: np.ndarray, start: int | None = None) -> dict[str, Any]:
        """The data with rows ``idx`` of the batch plate (each array along its own axis);
        ``start``: where ``idx`` begins in the current shuffle (:meth:`next`'s batches), so
        that torch arrays are indexed by the shuffle's own torch copy."""
        batch = dict(self.data)
        for k, axis in self.axes.items():
            v = self.data[k]
            if start is not None and hasattr(v, "device") and hasattr(v, "detach"):  # torch
                batch[k] = v.index_select(axis, self._torch_index(v.device, start))
            else:
                batch[k] = _take(v, idx, axis)
        return batch

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = sd["rng"]
        self.perm = None if sd["perm"] is None else np.asarray(sd["perm"])
        self.pos = int(sd["pos"])


def check_plate_follows_data(ctx: FitContext, plate: Any, batcher: Minibatcher) -> None:
    """Refuse, before work, a batch plate whose size does not follow the data.

    The program is run once on a minibatch (the first ``batch_size`` rows): a plate that keeps
    its full size there has a fixed size (a literal ``plate("data", 50)``, or a number passed
    as data) and would mismatch every batch. A program that cannot run on a batch at all is
    refused the same way, with its error.
    """
    b = batcher.batch_size
    batch = batcher.take(np.arange(b))
    fix = (
        f"Minibatching with `batch_size={b}` needs plate `{plate.name}` to take its size from "
        f"the data: write `plate({plate.name!r}, len(x))` with `x` the observed array "
        f"(`x.shape[axis]` for the axis the plate indexes, if not the first; ppgen passes "
        f"batches of {b} along it and weights the plate's sites by N/B)."
    )
    try:
        sites = ctx.program.ops.trace(ctx.program.model, batch, seed=ctx.seed)
    except Exception as e:
        lines = str(e).strip().splitlines()
        raise ProgramError(
            f"Running the program on a minibatch of {b} of the {plate.size} rows of plate "
            f"`{plate.name}` failed ({type(e).__name__}: {lines[0] if lines else ''}). {fix}"
        ) from e
    sizes = sorted({p.size for s in sites for p in s.plates if p.name == plate.name})
    if sizes != [b]:
        got = f"keeps size {sizes[0]}" if len(sizes) == 1 else f"has sizes {sizes}"
        raise ProgramError(
            f"Plate `{plate.name}` {got} when the program runs on a minibatch of {b} rows: "
            f"its size is fixed (a literal such as `plate({plate.name!r}, {plate.size})`, or a "
            f"number passed as data), not taken from the data. {fix}"
        )


def _take(v: Any, idx: np.ndarray, axis: int = 0) -> Any:
    """Entries ``idx`` along ``axis`` of ``v`` (a torch tensor, a JAX array or a numpy array)
    on its device."""
    if hasattr(v, "device") and hasattr(v, "detach"):  # torch
        import torch

        return v.index_select(axis, torch.as_tensor(idx, device=v.device))
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(v, jax.Array):
        # one compiled gather (eager fancy indexing of a JAX array is ~5 dispatches: ~50x slower)
        return _jax_take()(v, idx, axis)
    return np.take(v, idx, axis=axis)


@functools.cache
def _jax_take() -> Any:
    import jax
    import jax.numpy as jnp

    return jax.jit(lambda v, i, axis: jnp.take(v, i, axis=axis), static_argnums=2)


def _save(est: OptimEstimator, path: Path, state: Any, loop: dict[str, Any]) -> None:
    save_tree(path, {"estimator": est.state_dict(state), "loop": loop})


def _save_checked(
    est: OptimEstimator, path: Path, state: Any, loop: dict[str, Any], step: int
) -> None:
    """Write a checkpoint, refusing to overwrite a good one with NaN parameters."""
    bad = est.nonfinite_sites(state)
    if bad:
        raise NonFiniteError(
            f"Parameter(s) {bad} are NaN/inf at step {step}; the checkpoint at `{path}` was "
            "left as it was. Lower the learning rate or check the data scale."
        )
    _save(est, path, state, loop)


def _nonfinite_message(
    est: OptimEstimator, state: Any, n: int, values: Mapping[str, float], bad: list[str]
) -> str:
    """Which metric broke at step ``n`` and where: parameters (named by network) or sites."""
    params = est.nonfinite_sites(state)
    if params:
        where = f" Non-finite parameter(s): {params}."
    else:
        sites = est.nonfinite_loss_sites(state)
        where = " All parameters are finite" + (
            f"; the log-density is non-finite at site(s) {sites}." if sites else "."
        )
    shown = ", ".join(f"{k}={values[k]}" for k in bad)
    return (
        f"The {est.name} metric(s) {shown} became non-finite at step {n}.{where} Lower the "
        "learning rate, check the data scale, or give the failing site a better initial "
        "value. The last checkpoint (if any) holds finite values."
    )


def _step_failure(state: Any, err: ValueError, n: int) -> PPGenError | None:
    """ppgen's error for a ``ValueError`` raised inside step ``n``, or ``None`` to re-raise it.

    The engine (``state.explain_failure``, where it has one) names the site at fault; a NaN
    that torch's argument validation caught is the NaN guard's :class:`NonFiniteError` even
    when no engine can say more.
    """
    if isinstance(err, PPGenError):
        return None
    explain = getattr(state, "explain_failure", None)
    out = explain(f"at step {n}", err) if explain is not None else None
    return out if out is not None else step_error(None, f"at step {n}", err)


def live_samples(
    est: OptimEstimator, ctx: FitContext, state: Any, n: int, seed: int
) -> dict[str, np.ndarray] | None:
    """``n`` items of each observed site (rows of its plate) from the program run forward with
    the parameters as they are now, latent sites drawn from their prior: what a callback logs
    during training. ``None`` where the estimator cannot give its current parameters (NumPyro
    estimators other than SVI/MLE and Adversarial; nested network parameters)."""
    observed = ctx.info.observed
    if not observed or ctx.info.kind not in ("explicit", "implicit"):
        return None
    sets = sets_for_items(ctx.info, n)
    params = est.live_params(state, sets)
    if params is None and ctx.program.backend != "pyro":
        return None
    ops = ctx.program.ops
    with ops.device_context(ctx.device):
        out = ops.predictive(
            ctx.program.model,
            ctx.data,
            samples=params or None,
            num_samples=None if params else sets,
            return_sites=observed,
            seed=seed,
        )
    return items_of(ctx.info, {name: out[name] for name in observed}, n)


def _sample_callbacks(callbacks: list[Any]) -> list[tuple[int, int, Any]]:
    """``(every, n, on_samples)`` of the callbacks that ask for ``n`` samples every ``every``
    steps (read once, before the loop)."""
    out = []
    for cb in callbacks:
        every, n = getattr(cb, "samples_every", 0), getattr(cb, "samples", 0)
        on_samples = getattr(cb, "on_samples", None)
        if every and n and callable(on_samples):
            out.append((every, n, on_samples))
    return out


def _log_live_samples(
    est: OptimEstimator, ctx: FitContext, state: Any, step: int, wanted: list[Any]
) -> None:
    """Hand the callbacks in ``wanted`` (:func:`_sample_callbacks`) their samples when due."""
    for every, n, on_samples in wanted:
        if step % every:
            continue
        items = live_samples(est, ctx, state, n, seed=ctx.seed + step)
        if items is not None:
            on_samples(step, items)


def run_loop(est: OptimEstimator, ctx: FitContext) -> Fit:
    """Run an :class:`OptimEstimator` to completion and return its :class:`Fit`."""
    info = ctx.info
    plate, axes = None, {}
    if est.batch_size is not None:
        plate = find_batch_plate(info, ctx.data, est.batch_plate, est.batch_size)
        if est.batch_size < plate.size:
            axes = plate_axes(info, ctx.data, plate)
    size = plate.size if plate is not None else 1
    batcher = Minibatcher(
        ctx.data,
        size,
        est.batch_size,
        ctx.seed,
        plate and plate.name,
        axes=axes,
        drop_last=getattr(est, "drop_last", False),
        shard=ctx.extra.get("shard", (0, 1)),
    )
    if plate is not None and batcher.batch_size:
        check_plate_follows_data(ctx, plate, batcher)
    ctx.extra["batch_plate"] = plate.name if (plate is not None and batcher.batch_size) else None
    ctx.extra["batch_keys"] = tuple(batcher.keys) if ctx.extra["batch_plate"] else ()
    ctx.extra["batch_axes"] = dict(batcher.axes) if ctx.extra["batch_plate"] else {}
    total = est.steps if est.epochs is None else est.epochs * batcher.steps_per_epoch

    state = est.init(ctx)
    step = 0
    history: dict[str, list[float]] = {}
    ckpt = Path(ctx.checkpoint_dir) / CHECKPOINT_NAME if ctx.checkpoint_dir else None
    # data-parallel runs: every process reads a checkpoint, only the first writes one
    writes = ckpt if ctx.extra.get("shard", (0, 1))[0] == 0 else None
    if ctx.resume:
        if ckpt is None or not ckpt.exists():
            raise CheckpointError(
                "`resume=True` but there is no checkpoint in "
                f"`checkpoint_dir={ctx.checkpoint_dir}`."
            )
        sd = load_tree(ckpt)
        state = est.load_state_dict(state, sd["estimator"])
        step = int(sd["loop"]["step"])
        history = {k: list(map(float, v)) for k, v in sd["loop"]["history"].items()}
        batcher.load_state_dict(sd["loop"]["batcher"])

    def loop_state() -> dict[str, Any]:
        return {"step": step, "history": history, "batcher": batcher.state_dict()}

    bar = tqdm(
        total=total,
        initial=step,
        disable=not ctx.progress or ctx.extra.get("shard", (0, 1))[0] != 0,
        file=sys.stderr,
        desc=est.name,
        dynamic_ncols=True,
    )
    interrupted = stopped = False
    # Engines whose step returns device values before the work is done (JAX's asynchronous
    # dispatch) have their metrics read one step late: step t+1 is queued before step t's loss
    # is brought to the host, so the host never idles the device. If a callback stops the loop
    # at step t, step t+1 is undone (`rewind`) with its minibatch. Steps before a checkpoint and
    # the last step are read at once, so checkpoints, histories, callbacks and stops are exactly
    # those of a synchronous loop.
    lag = est.async_metrics(state)
    pending: tuple[int, Mapping[str, Any]] | None = None

    def record(n: int, metrics: Mapping[str, Any]) -> bool:
        """Guard, log and report step ``n``'s metrics; whether a callback asked to stop."""
        values = {k: float(v) for k, v in metrics.items()}
        bad_metrics = [k for k, v in values.items() if not math.isfinite(v)]
        if bad_metrics:
            explain = getattr(state, "explain_failure", None)
            err = explain(f"at step {n}") if explain is not None else None
            raise err or NonFiniteError(_nonfinite_message(est, state, n, values, bad_metrics))
        for k, v in values.items():
            history.setdefault(k, []).append(v)
        bar.update(1)
        if not bar.disable and (n % 10 == 0 or n == total):
            bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        stop = False
        for cb in ctx.callbacks:
            try:
                if cb(n, metrics) is True:
                    stop = True
            except StopTraining:
                stop = True
        return stop

    in_step = False
    wanted = _sample_callbacks(ctx.callbacks)
    try:
        while step < total:
            batch, scale = batcher.next()
            in_step = True
            try:
                state, metrics = est.step(state, {"data": batch, "scale": scale})
            except ValueError as e:  # torch's validation inside a step: name the site and step
                err = _step_failure(state, e, step + 1)
                if err is None:
                    raise
                raise err from e
            in_step = False
            step += 1
            if wanted:  # the parameters of this very step
                _log_live_samples(est, ctx, state, step, wanted)
            if pending is not None:
                (n, m), pending = pending, None
                if record(n, m):  # a callback stopped the loop at step n: undo step n + 1
                    state, step, stopped = est.rewind(state), n, True
                    batcher.undo()
                    break
            save = bool(writes and ctx.checkpoint_every and step % ctx.checkpoint_every == 0)
            if lag and not (save or step == total):
                pending = (step, metrics)
                continue
            stopped = record(step, metrics)
            if save:
                _save_checked(est, writes, state, loop_state(), step)
            if stopped:
                break
    except KeyboardInterrupt:
        interrupted = True
        if in_step:  # cut short inside a step: it never happened (its batch, its draws)
            batcher.undo()
            state = est.abort_step(state)
        if pending is not None:  # the queued step ran: keep its loss with its parameters
            (n, m), pending = pending, None
            record(n, m)
        warnings.warn(
            f"Interrupted at step {step}; returning the fit so far"
            + (f" and saving a checkpoint to `{ckpt}`." if ckpt else "."),
            RuntimeWarning,
            stacklevel=2,
        )
    finally:
        bar.close()
        for cb in ctx.callbacks:  # e.g. a logger closing its file
            end = getattr(cb, "on_fit_end", None)
            if callable(end):
                end()
    if writes is not None:
        _save_checked(est, writes, state, loop_state(), step)
    fit = est.finalize(ctx, state, history)
    fit.diagnostics.update({"steps": step, "interrupted": interrupted, "early_stopped": stopped})
    for cb in ctx.callbacks:  # e.g. a logger drawing samples from the finished fit
        on_fit = getattr(cb, "on_fit", None)
        if callable(on_fit):
            on_fit(fit)
    return fit
