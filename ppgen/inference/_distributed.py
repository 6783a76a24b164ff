"""What data-parallel torch runs share (:class:`~ppgen.inference.runners.DDP`): averaging
gradients and metrics across the processes, and per-process noise from one shared stream."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "all_reduce_mean",
    "average_metrics",
    "gather_rows",
    "rank_noise",
    "read_scalars",
    "run_step",
    "shard_of",
    "start_in_step",
]

_GOLDEN = 0x9E3779B97F4A7C15  # odd 64-bit constant: rank r's seed offset is r * _GOLDEN


def shard_of(ctx: Any) -> tuple[int, int]:
    """``(rank, world)`` of this process in a data-parallel run; ``(0, 1)`` otherwise."""
    return tuple(ctx.extra.get("shard", (0, 1)))  # type: ignore[return-value]


def all_reduce_mean(tensors: Sequence[torch.Tensor], scalars: Sequence[float] = ()) -> list[float]:
    """Average ``tensors`` (in place) and ``scalars`` over the processes in one all-reduce of
    one flat buffer; returns the averaged scalars. Pyro keeps its parameters in its param
    store and a critic is a separate module, so there is no single module DDP could wrap: the
    gradients are reduced here, as DDP's reducer does, in one collective per step."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    world = dist.get_world_size()
    ref = tensors[0] if tensors else torch.zeros(())
    tail = torch.tensor(list(scalars), dtype=ref.dtype, device=ref.device)
    flat = _flatten_dense_tensors([*tensors, tail])
    dist.all_reduce(flat)
    flat /= world
    k = len(scalars)
    body = flat[: flat.numel() - k]
    for t, avg in zip(tensors, _unflatten_dense_tensors(body, list(tensors)), strict=True):
        t.copy_(avg)
    return flat[flat.numel() - k :].tolist()


def start_in_step(ctx: Any, tensors: Iterable[torch.Tensor]) -> None:
    """Data-parallel runs: every process starts from rank 0's values of ``tensors`` (the
    parameters) and of the program module's buffers, one broadcast, as torch's
    ``DistributedDataParallel`` does when it wraps a module. A network built before
    ``ppgen.fit`` is initialised from each process's own RNG, so the processes would otherwise
    start (and stay) apart. Nothing happens in a one-process run."""
    if shard_of(ctx)[1] == 1:
        return
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    module = getattr(ctx.program, "module", None)
    buffers = list(module.buffers()) if module is not None else []
    seen: set[int] = set()
    every = []
    for t in [*tensors, *buffers]:
        if id(t) not in seen and t.numel():
            seen.add(id(t))
            every.append(t)
    with torch.no_grad():
        for dtype in sorted({t.dtype for t in every}, key=str):  # one flat buffer per dtype
            same = [t for t in every if t.dtype == dtype]
            flat = _flatten_dense_tensors([t.detach() for t in same])
            dist.broadcast(flat, 0)
            for t, v in zip(same, _unflatten_dense_tensors(flat, same), strict=True):
                t.copy_(v)


def average_metrics(metrics: Mapping[str, float], world: int) -> dict[str, float]:
    """A step's metrics averaged over the ``world`` processes (each computed them on its share
    of the batch), so the progress bar, history and callbacks see the global batch's."""
    if world == 1 or not metrics:
        return dict(metrics)
    keys = list(metrics)
    values = all_reduce_mean([], [float(metrics[k]) for k in keys])
    return dict(zip(keys, values, strict=True))


@contextlib.contextmanager
def rank_noise(rank: int, device: str | torch.device | None = None) -> Iterator[None]:
    """Draw this block's random numbers from process ``rank``'s own stream.

    Every process of a data-parallel run holds the same global RNG state (the same seed, the
    same draws). Inside this block each process draws from a stream seeded by one number taken
    from that shared state and by its rank; afterwards the shared state is where every process
    left it, one draw further on. So the processes simulate independent noise (a GAN's fakes, a
    critic's interpolates), while checkpoints hold one RNG state that resumes every rank, with
    the same number of processes or another.

    Example: ranks 0 and 1 draw different numbers and leave the shared stream equal.

        >>> _ = torch.manual_seed(0)
        >>> with rank_noise(0):
        ...     a = torch.rand(2)
        >>> after_0 = torch.get_rng_state()
        >>> _ = torch.manual_seed(0)
        >>> with rank_noise(1):
        ...     b = torch.rand(2)
        >>> bool((a != b).all()), bool(torch.equal(after_0, torch.get_rng_state()))
        (True, True)
    """
    base = int(torch.randint(0, 2**62, ()).item())
    dev = torch.device(device) if device is not None else torch.device("cpu")
    cuda = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.manual_seed((base + rank * _GOLDEN) % 2**63)
        yield


def run_step(
    ctx: Any, device: str | None, step: Callable[[Any], dict[str, float]], data: Any
) -> dict[str, float]:
    """``step(data)`` of an engine whose steps draw noise (a GAN's fakes, a sampler's moves):
    as is in one process; in a data-parallel run with this process's own noise
    (:func:`rank_noise`) and the metrics averaged over the processes."""
    rank, world = shard_of(ctx)
    if world == 1:
        return step(data)
    with rank_noise(rank, device):
        metrics = step(data)
    return average_metrics(metrics, world)


def read_scalars(values: Sequence[torch.Tensor]) -> list[float]:
    """Scalar tensors as floats: one by one on the CPU (cheapest there), in one transfer from
    an accelerator (each ``.item()`` would wait for the device).

    Example:
        >>> read_scalars([torch.tensor(1.5), torch.tensor(2.0)])
        [1.5, 2.0]
    """
    if values[0].device.type == "cpu":
        return [v.item() for v in values]
    with torch.no_grad():  # values may still be in a graph
        return torch.stack(list(values)).tolist()


def gather_rows(t: torch.Tensor, interleave: bool = True) -> torch.Tensor:
    """Every process's ``t`` (the same shape everywhere) joined along rows: interleaved
    (process ``r``'s rows back at ``r::world``, undoing a ``[rank::world]`` split) or one
    process after another (``interleave=False``)."""
    import torch.distributed as dist

    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    if not interleave:
        return torch.cat(parts)
    return torch.stack(parts, 1).reshape(-1, *t.shape[1:])
